PYTHON ?= python3

.PHONY: proto proto-check

# Regenerate the CRI v1 Python stubs (proto/criapi/) from proto/api.proto.
proto:
	$(PYTHON) proto/generate.py

# Fail if the committed stubs do not match a fresh generation.
proto-check:
	$(PYTHON) proto/generate.py --check
