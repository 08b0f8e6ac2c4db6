"""The transaction layer: 2PC coordinator with a durable log and recovery, participants' safety net, HTLC."""
