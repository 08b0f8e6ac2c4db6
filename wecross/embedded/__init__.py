"""The embedded chain: a small real blockchain inside the router process (the default stub).

Modules by concern: ``block`` (records and canonical encoding), ``state`` (world state and its root), ``store``
(SQLite), ``resources`` (built-in kv and asset resources), ``ledger`` (the engine and its threading), ``stub``
(IStub/IResource), ``verify`` (checking a write's proofs), ``factory`` (the plugin object).
"""
