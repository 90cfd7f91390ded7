"""The engine side: what runs the model, and the machine it runs on.

models   the embedded tiny model and turning ``--model`` into a folder or hub id vLLM can load
server   ``LocalVLLMServer``: a real vLLM OpenAI-compatible server on 127.0.0.1 (tests, benches)
gpu      GPU and host memory: reading devices (``gpu-status``), the pre-flight, the sampler

vLLM, torch and pynvml are imported only inside the functions that need them.
"""
