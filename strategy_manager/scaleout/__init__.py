"""Scale-out: strategies spread over the nodes of a Ray cluster (``executor: ray``).

One host per Ray node (:mod:`~strategy_manager.scaleout.host`) runs an ordinary
orchestrator restricted to the strategies assigned to it. The driver
(:mod:`~strategy_manager.scaleout.ray_driver`) starts the hosts, spreads the strategies
over them (:mod:`~strategy_manager.scaleout.assignment`) and moves a failed host's
strategies to the others (:mod:`~strategy_manager.scaleout.fleet`, which decides
without Ray). Who actually runs a strategy is decided by its lease in the store alone:
an assignment only says who may try to claim it, and a Ray death notice only triggers
a reassignment, never a claim over a lease that has not expired.

Nothing here imports Ray until a driver or a host is built, so the core stays free
of it unless ``executor: ray`` is chosen.
"""
