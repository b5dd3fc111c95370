"""ESSEN's actors: one per module, each an explicit run(...) taking its channels."""
