"""The labelled corpus `python -m bench.safety_eval` runs on; `bench.safety_corpus.build` makes it.

pii.jsonl holds texts that carry one kind of PII or secret (label: the detector that should
find it); harmful.jsonl holds prompt injections, jailbreaks and requests for dangerous things
(label: prompt_injection or deny_terms); benign.jsonl holds everyday prompts and code, many of
them look-alikes ("my card was declined", order numbers, timestamps, versions, hashes, "ignore
my previous e-mail"). Every value is synthetic: generated with valid checksums, no real
person's data.
"""
