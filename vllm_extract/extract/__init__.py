"""The extraction stage: chunks, prompts, grammars, parsing the answer, aligning it to the text."""
