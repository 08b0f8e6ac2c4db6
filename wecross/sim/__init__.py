"""``wecross sim``: the real router code, hundreds to thousands of routers in one process, on a virtual clock.

model (what a network is) → topologies (files and generators) → scenario (timed events and traffic) →
network (RouterNodes over simulated links, clock) → runner (one run, measurements) → report and plots.
"""
