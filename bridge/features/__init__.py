"""The features of the running bridge; `installed.py` lists them in installation order.

Each entry takes the built bridge as a `bridge.host.Host` (parts, service, bot, outbox and
scheduler exist but nothing has started), builds its feature, hands it to
`app.service.install` (which collects the methods marked with the decorators of
`bridge.hooks`) and adds its start/stop callbacks.

A new feature is one module here (`features/NAME.py`), or one package when it outgrows
~500 lines (`features/NAME/`, as `email/` and `onboarding/`), with an installer
`install_NAME(app: Host)` added to `ALL` in `installed.py`. A feature imports the core, the
store, the adapters and the shared modules below it (`service`, `outbox`, `provision`,
`ports`, ...), never another feature and never the composition root: what it needs of
another feature is a typed port in `bridge/ports.py`, which the owning feature fills in
`app.ports` when it is installed and the other reads when it needs it.

The list lives in its own module, not here: importing one feature (a face importing a
feature's use case) must not import every other feature with it.
"""
