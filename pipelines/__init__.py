"""The Wukong training pipeline (KFP v2) and its compiled YAML."""
