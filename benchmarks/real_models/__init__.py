"""Real pretrained models (SmolLM2-135M, Gemma-3-270M): knowledge, traces, editors, fixes, corpora, tasks."""
