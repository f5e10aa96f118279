#!/usr/bin/env python3
"""Prints the YAML documents of a file (kubectl kustomize's output) as one JSON array, empty
documents left out. The deploy tests read manifests through this (python3-yaml, setup.sh)."""
import json
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
json.dump(docs, sys.stdout)
