"""Herald's Dramatiq layer: the broker and its middleware, and one thin module per actor.

Nothing is built at import. The composition root (`herald.bootstrap`) builds the broker
(`actors.broker.build_broker`) and declares the actors on it
(`actors.registry.declare_actors`); the worker and the scheduler start with
`dramatiq herald.worker:setup` and `periodiq herald.worker:setup`.
"""
