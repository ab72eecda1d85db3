"""Behaviour on a world model: the actor-critic trained in its dream, MCTS and CEM planners, dream controllers."""
