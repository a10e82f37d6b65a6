"""One thin script per DVC stage: parse paths, load params, call lib, write outputs.

Importing this package pins the offline defaults for every entry point: no stage ever waits
on the Hugging Face hub unless the user sets HF_HUB_OFFLINE=0 explicitly (real hub runs).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
