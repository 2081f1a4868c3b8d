"""Teacher fine-tuning (full or LoRA) and knowledge distillation into a small student."""
