"""Run:ai's vocabulary (runai.names): the one place the repository spells Run:ai's and KAI's names."""
