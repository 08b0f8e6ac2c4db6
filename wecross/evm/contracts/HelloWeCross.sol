// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./TxBook.sol";

/// @title HelloWeCross: a key/value store, the EVM twin of the embedded chain's `kv` resource.
/// @notice Anyone may read and write any key, as on the embedded chain: through a router every write is signed by
///         the router's key, and the router decides who may reach this resource.
///
///         Two-phase commit (the router's transaction layer): `prepareSet` records a step of transaction `txId` and
///         locks its key; `commit` applies the transaction's steps in order, `rollback` drops them; either releases
///         the locks. While a key is locked, `get` and `set` of it revert with "locked: key '...' is locked by
///         transaction ...". Only the deploying router may prepare, commit and roll back.
contract HelloWeCross {
    using TxBook for TxBook.Book;

    /// @dev Slot 0: the router proves `get` from this slot (wecross/chain/evm_checks.py LAYOUT); keep it first.
    mapping(string => string) private values;
    TxBook.Book private book;
    mapping(bytes32 => Step[]) private steps;
    address private immutable router;

    struct Step {
        string key;
        string value;
    }

    /// @notice Emitted on every write, so watchers can follow the store through eth_getLogs.
    event Set(string key, string value);
    event SetPrepared(bytes32 indexed txKey, string txId, string key, string value);
    event TxCommitted(bytes32 indexed txKey, string txId);
    event TxRolledBack(bytes32 indexed txKey, string txId);

    modifier onlyRouter() {
        require(msg.sender == router, "forbidden: only the router that deployed this contract");
        _;
    }

    constructor() {
        router = msg.sender;
    }

    function set(string calldata key, string calldata value) external {
        book.checkFree("key", key);
        values[key] = value;
        emit Set(key, value);
    }

    /// @return The value stored under `key`, or the empty string if none was.
    function get(string calldata key) external view returns (string memory) {
        book.checkFree("key", key);
        return values[key];
    }

    function prepareSet(string calldata txId, string calldata key, string calldata value) external onlyRouter {
        bytes32 txKey = book.open(txId);
        book.lock(txKey, "key", key);
        steps[txKey].push(Step(key, value));
        emit SetPrepared(txKey, txId, key, value);
    }

    function commit(string calldata txId) external onlyRouter {
        bytes32 txKey = book.close(txId, TxBook.COMMITTED);
        Step[] storage done = steps[txKey];
        for (uint256 i = 0; i < done.length; i++) {
            values[done[i].key] = done[i].value;
            emit Set(done[i].key, done[i].value);
            book.release(done[i].key);
        }
        delete steps[txKey];
        emit TxCommitted(txKey, txId);
    }

    function rollback(string calldata txId) external onlyRouter {
        bytes32 txKey = book.close(txId, TxBook.ROLLED_BACK);
        Step[] storage dropped = steps[txKey];
        for (uint256 i = 0; i < dropped.length; i++) {
            book.release(dropped[i].key);
        }
        delete steps[txKey];
        emit TxRolledBack(txKey, txId);
    }

    /// @return state 0 unknown, 1 prepared, 2 committed, 3 rolled back; since the block time of its first prepare;
    ///         doneBlock the block of its commit or rollback; the steps while prepared (none once ended).
    function txInfo(string calldata txId)
        external
        view
        returns (uint8 state, uint64 since, uint64 doneBlock, Step[] memory prepared)
    {
        (state, since, doneBlock) = book.info(txId);
        prepared = steps[keccak256(bytes(txId))];
    }

    function preparedTxs() external view returns (string[] memory) {
        return book.preparedIds();
    }
}
