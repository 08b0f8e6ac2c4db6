"""Chain-independent verification material: Merkle trees and proofs (and, with the router, the header store)."""
