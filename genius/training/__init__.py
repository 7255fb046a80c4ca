"""The pieces of ACO training that `genius.training.recipe` composes: batches and log-probs, the
per-pair objective, reference log-probs kept on disk, the policy (full or LoRA) and its
checkpoint, and resumable training state. Each module is one concept; `genius/training/recipe.py`
reads top to bottom as the recipe.
"""
