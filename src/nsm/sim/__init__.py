"""MuJoCo simulation of the SO-101 scene, its scripted expert and a simulated battery."""
