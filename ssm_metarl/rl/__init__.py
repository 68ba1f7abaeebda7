"""Reinforcement learning: rollouts, GAE, losses, PPO and REINFORCE."""
