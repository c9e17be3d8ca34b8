"""Generation: logits filters, the batch sampler, prompts."""
