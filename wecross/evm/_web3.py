"""The one place web3 is imported, so that its side effect on the interpreter is undone wherever it is used.

Importing web3 imports py_ecc, which raises the interpreter's recursion limit to 100,000 for the whole process;
C code that recurses (json, pickle) can then overflow the C stack instead of raising RecursionError. A router does
not use py_ecc's pairing code: the limit goes back to the interpreter's default here. Modules of the EVM stub take
web3's names from this module, never from web3 directly.
"""

from __future__ import annotations

import sys

from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception

_DEFAULT_RECURSION_LIMIT = 1000
if sys.getrecursionlimit() > _DEFAULT_RECURSION_LIMIT:
    sys.setrecursionlimit(_DEFAULT_RECURSION_LIMIT)

__all__ = ["ContractLogicError", "Web3", "Web3Exception"]
