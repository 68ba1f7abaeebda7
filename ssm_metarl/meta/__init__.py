"""Meta-learning: MAML over task distributions, in-context RL², and the seeds' MetaMAML APIs."""
