"""The model card: open-loop error, controllability, counterfactuals, probes, the latent explorer and figures."""
