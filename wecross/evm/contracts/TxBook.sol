// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title TxBook: the two-phase-commit bookkeeping the built-in contracts share (tx records, locks, the prepared list).
/// @notice A library of internal functions over one storage struct, not a base contract: a base contract's state
///         variables would come first in storage and move the slots the router's read proofs rely on
///         (HelloWeCross.values at slot 0; AssetLedger.totalSupply and balances at slots 0 and 1). Each contract
///         declares its Book after those.
///
///         Revert reasons of the transaction layer start with a code and ": " (``locked: ...``, ``tx_state: ...``);
///         the EVM stub turns the code into its StubError code and the rest into the message.
library TxBook {
    uint8 internal constant NONE = 0;
    uint8 internal constant PREPARED = 1;
    uint8 internal constant COMMITTED = 2;
    uint8 internal constant ROLLED_BACK = 3;

    struct Record {
        string id; // the transaction id as the coordinator names it, for messages and listings
        uint8 state;
        uint64 since; // block time of the first prepare
        uint64 doneBlock; // block of the commit or rollback: where its log (and so its transaction) is found again
        uint64 position; // 1 + index in Book.prepared while prepared, else 0
    }

    struct Book {
        mapping(string => bytes32) lockOf; // key or account -> keccak256 of the holding transaction's id; 0 = free
        mapping(bytes32 => Record) txs; // keccak256(id) -> record; kept after the end, so a late prepare is refused
        bytes32[] prepared; // keys of the prepared transactions, for a restarted router's listing
    }

    function stateName(uint8 state) internal pure returns (string memory) {
        if (state == PREPARED) return "prepared";
        if (state == COMMITTED) return "committed";
        if (state == ROLLED_BACK) return "rolled back";
        return "unknown";
    }

    /// @notice The record of `id` for one more prepare step: a new one is opened, a prepared one continued; a
    ///         transaction that already ended is refused, so a prepare that arrives after its rollback locks nothing.
    function open(Book storage book, string calldata id) internal returns (bytes32 key) {
        require(bytes(id).length > 0, "bad_args: empty transaction id");
        key = keccak256(bytes(id));
        Record storage record = book.txs[key];
        if (record.state == NONE) {
            record.id = id;
            record.state = PREPARED;
            record.since = uint64(block.timestamp);
            book.prepared.push(key);
            record.position = uint64(book.prepared.length);
        } else if (record.state != PREPARED) {
            revert(string.concat("tx_state: transaction ", id, " is already ", stateName(record.state)));
        }
    }

    /// @notice Ends prepared transaction `id` (COMMITTED or ROLLED_BACK) and drops it from the prepared list; the
    ///         caller applies or discards its steps and releases its locks.
    function close(Book storage book, string calldata id, uint8 outcome) internal returns (bytes32 key) {
        key = keccak256(bytes(id));
        Record storage record = book.txs[key];
        if (record.state == NONE) {
            revert(string.concat("unknown_tx: no transaction ", id, " was prepared here"));
        }
        if (record.state != PREPARED) {
            revert(string.concat("tx_state: transaction ", id, " is already ", stateName(record.state)));
        }
        record.state = outcome;
        record.doneBlock = uint64(block.number);
        uint256 index = record.position - 1;
        uint256 last = book.prepared.length - 1;
        if (index != last) {
            bytes32 moved = book.prepared[last];
            book.prepared[index] = moved;
            book.txs[moved].position = uint64(index + 1);
        }
        book.prepared.pop();
        record.position = 0;
    }

    /// @notice Takes the lock on `name` for transaction `key`, or reverts naming the transaction that holds it
    ///         (`what` names the kind of thing locked in the message: "key", "balance of").
    function lock(Book storage book, bytes32 key, string memory what, string calldata name) internal {
        bytes32 holder = book.lockOf[name];
        if (holder == key) return;
        if (holder != bytes32(0)) {
            revert(string.concat("locked: ", what, " '", name, "' is locked by transaction ", book.txs[holder].id));
        }
        book.lockOf[name] = key;
    }

    /// @notice Reverts if any transaction holds `name`: what plain reads and writes check.
    function checkFree(Book storage book, string memory what, string calldata name) internal view {
        bytes32 holder = book.lockOf[name];
        if (holder != bytes32(0)) {
            revert(string.concat("locked: ", what, " '", name, "' is locked by transaction ", book.txs[holder].id));
        }
    }

    function release(Book storage book, string storage name) internal {
        delete book.lockOf[name];
    }

    function info(Book storage book, string calldata id) internal view returns (uint8, uint64, uint64) {
        Record storage record = book.txs[keccak256(bytes(id))];
        return (record.state, record.since, record.doneBlock);
    }

    function preparedIds(Book storage book) internal view returns (string[] memory ids) {
        ids = new string[](book.prepared.length);
        for (uint256 i = 0; i < ids.length; i++) {
            ids[i] = book.txs[book.prepared[i]].id;
        }
    }
}
