"""The engine side: what runs the model, and the machine it runs on.

models         the embedded tiny model and turning ``--model`` into a folder or hub id vLLM can load
server         ``LocalVLLMServer``: a real vLLM OpenAI-compatible server on 127.0.0.1 (tests, benches)
gpu            GPU and host memory: reading devices (``gpu-status``), the pre-flight, the sampler
machine_facts  the machine's facts (CPU flags, torch's and oneDNN's ISA limits, cores, quota, device)
model_size     a local model's parameter count and attention width, without torch
hardware       the choices made from them before vLLM starts: the dtype, the per-step token budget
               and the execute-model timeout

vLLM, torch and pynvml are imported only inside the functions that need them.
"""
