"""The extraction stage: chunks, prompts, grammars, parsing the answer, aligning it to the text.

tokens     ``Tokenizer``: exact counts with the model's own tokenizer, labelled estimates otherwise
chunking   a document cut into chunks of at most N tokens, on paragraph or sentence boundaries
prompts    the instructions, the chat messages and the JSON schema of an answer
grammar    grounded decoding: a grammar per chunk that lets the model write only spans of it
segments   where a span may start and end (shared by the grammar and alignment)
parsing    the model's answer -> raw entities
matching   edges, NFC matching and finding a name's occurrences in a text
grounding  one chunk's raw entities -> spans of the document (``Entity``)
alignment  one document's entities: chunks merged, every mention marked (``align_document``)
"""
