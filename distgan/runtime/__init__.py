"""The per-rank runtime, the same for every task: the loop, the schedule of what is due, DeepSpeed's engines
(the one seam to DeepSpeed), random streams, and the GAN-algorithm base and task protocol the tasks fill in."""
