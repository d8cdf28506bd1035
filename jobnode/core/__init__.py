"""The ground floor: what every other package stands on.

Owns the job record and its codec (`job`, `record`), the typed errors (`errors`), the
validated configuration (`settings`) and the supervision of background tasks
(`background`). Imports nothing from the rest of jobnode.
"""
