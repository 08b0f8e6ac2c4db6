// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./TxBook.sol";

/// @title AssetLedger: balances of named accounts, the EVM twin of the embedded chain's `asset` resource.
/// @notice Accounts are strings (the router's user names), not addresses: users never hold Ethereum keys. The only
///         signer is the deployer, i.e. the router's key, so every write is restricted to it; the router checks
///         who its caller is (a transfer only from the caller's own account, a mint only by the configured issuer)
///         before it signs.
///
///         Two-phase commit: `prepareTransfer` records a transfer of transaction `txId` against the balances as the
///         transaction has changed them so far and locks both accounts; `commit` applies the transaction's
///         transfers in order, `rollback` drops them. A locked account cannot be read, debited or credited outside
///         its transaction ("locked: balance of '...' is locked by transaction ..."), with one exception: an HTLC's
///         unlock or refund credits it all the same, since an HTLC's deadline must not wait for someone else's
///         lock, and a credit cannot make a prepared debit fail (the commit applies the transfers as differences
///         to the current balances).
///
///         HTLC: `htlcLock` moves an amount from the sender's account into escrow under a sha256 hash lock and a
///         time lock (unix seconds, block time); `htlcUnlock` with the secret before the time lock pays the
///         receiver; `htlcRefund` from the time lock on returns it to the sender. Escrowed amounts stay in
///         totalSupply.
contract AssetLedger {
    using TxBook for TxBook.Book;

    address public immutable owner;
    /// @dev Slots 0 and 1: the router proves totalSupply and balanceOf from them; keep them first.
    uint256 public totalSupply;
    mapping(string => uint256) private balances;
    TxBook.Book private book;
    mapping(bytes32 => Step[]) private steps;
    /// @dev Per prepared transaction and account: what its steps so far credited and debited.
    mapping(bytes32 => mapping(string => uint256)) private credited;
    mapping(bytes32 => mapping(string => uint256)) private debited;
    mapping(bytes32 => Htlc) private htlcs;

    uint8 private constant HTLC_LOCKED = 1;
    uint8 private constant HTLC_UNLOCKED = 2;
    uint8 private constant HTLC_REFUNDED = 3;

    struct Step {
        string from;
        string to;
        uint256 amount;
    }

    struct Htlc {
        uint8 state; // 0 unknown, 1 locked, 2 unlocked, 3 refunded
        uint64 timelock;
        bytes32 hashLock;
        uint256 amount;
        string sender;
        string receiver;
        bytes secret;
    }

    /// @notice A mint is a transfer from the empty account name.
    event Transfer(string from, string to, uint256 amount);
    event TransferPrepared(bytes32 indexed txKey, string txId, string from, string to, uint256 amount);
    event TxCommitted(bytes32 indexed txKey, string txId);
    event TxRolledBack(bytes32 indexed txKey, string txId);
    event HtlcLocked(bytes32 indexed htlcKey, string id, string sender, string receiver, uint256 amount,
                     bytes32 hashLock, uint64 timelock);
    event HtlcUnlocked(bytes32 indexed htlcKey, string id, bytes secret);
    event HtlcRefunded(bytes32 indexed htlcKey, string id);

    modifier onlyOwner() {
        require(msg.sender == owner, "only the owner");
        _;
    }

    constructor() {
        owner = msg.sender;
    }

    function balanceOf(string calldata account) external view returns (uint256) {
        book.checkFree("balance of", account);
        return balances[account];
    }

    function mint(string calldata account, uint256 amount) external onlyOwner {
        require(bytes(account).length > 0, "empty account name");
        book.checkFree("balance of", account);
        totalSupply += amount;
        balances[account] += amount;
        emit Transfer("", account, amount);
    }

    function transfer(string calldata from, string calldata to, uint256 amount) external onlyOwner {
        require(bytes(from).length > 0 && bytes(to).length > 0, "empty account name");
        book.checkFree("balance of", from);
        book.checkFree("balance of", to);
        uint256 held = balances[from];
        require(held >= amount, "insufficient balance");
        unchecked {
            balances[from] = held - amount;
        }
        balances[to] += amount;
        emit Transfer(from, to, amount);
    }

    // -- two-phase commit ------------------------------------------------------------------------------------------
    function prepareTransfer(string calldata txId, string calldata from, string calldata to, uint256 amount)
        external
        onlyOwner
    {
        require(bytes(from).length > 0 && bytes(to).length > 0, "empty account name");
        bytes32 txKey = book.open(txId);
        book.lock(txKey, "balance of", from);
        book.lock(txKey, "balance of", to);
        uint256 available = balances[from] + credited[txKey][from] - debited[txKey][from];
        if (available < amount) {
            revert(string.concat("insufficient_funds: ", from, " holds ", _decimal(available), ", cannot transfer ",
                                 _decimal(amount)));
        }
        debited[txKey][from] += amount;
        credited[txKey][to] += amount;
        steps[txKey].push(Step(from, to, amount));
        emit TransferPrepared(txKey, txId, from, to, amount);
    }

    function commit(string calldata txId) external onlyOwner {
        bytes32 txKey = book.close(txId, TxBook.COMMITTED);
        Step[] storage done = steps[txKey];
        for (uint256 i = 0; i < done.length; i++) {
            Step storage step = done[i];
            balances[step.from] -= step.amount; // cannot fail: checked at prepare, and a locked account only gains
            balances[step.to] += step.amount;
            emit Transfer(step.from, step.to, step.amount);
            _forget(txKey, step);
        }
        delete steps[txKey];
        emit TxCommitted(txKey, txId);
    }

    function rollback(string calldata txId) external onlyOwner {
        bytes32 txKey = book.close(txId, TxBook.ROLLED_BACK);
        Step[] storage dropped = steps[txKey];
        for (uint256 i = 0; i < dropped.length; i++) {
            _forget(txKey, dropped[i]);
        }
        delete steps[txKey];
        emit TxRolledBack(txKey, txId);
    }

    function _forget(bytes32 txKey, Step storage step) private {
        book.release(step.from);
        book.release(step.to);
        delete credited[txKey][step.from];
        delete debited[txKey][step.from];
        delete credited[txKey][step.to];
        delete debited[txKey][step.to];
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

    // -- HTLC ----------------------------------------------------------------------------------------------------
    function htlcLock(string calldata id, string calldata sender, string calldata receiver, uint256 amount,
                      bytes32 hashLock, uint64 timelock) external onlyOwner {
        require(bytes(id).length > 0, "bad_args: empty HTLC id");
        require(bytes(sender).length > 0 && bytes(receiver).length > 0, "empty account name");
        require(amount > 0, "bad_args: an HTLC's amount must be positive");
        bytes32 key = keccak256(bytes(id));
        Htlc storage htlc = htlcs[key];
        if (htlc.state != 0) {
            revert(string.concat("htlc_state: HTLC '", id, "' already exists (", _htlcState(htlc.state), ")"));
        }
        if (timelock <= block.timestamp) {
            revert(string.concat("too_late: the time lock ", _decimal(timelock), " is not after the chain's time ",
                                 _decimal(block.timestamp)));
        }
        book.checkFree("balance of", sender);
        uint256 held = balances[sender];
        if (held < amount) {
            revert(string.concat("insufficient_funds: ", sender, " holds ", _decimal(held), ", cannot lock ",
                                 _decimal(amount)));
        }
        unchecked {
            balances[sender] = held - amount;
        }
        htlc.state = HTLC_LOCKED;
        htlc.timelock = timelock;
        htlc.hashLock = hashLock;
        htlc.amount = amount;
        htlc.sender = sender;
        htlc.receiver = receiver;
        emit HtlcLocked(key, id, sender, receiver, amount, hashLock, timelock);
    }

    function htlcUnlock(string calldata id, bytes calldata secret) external onlyOwner {
        bytes32 key = keccak256(bytes(id));
        Htlc storage htlc = _locked(id, key);
        if (sha256(secret) != htlc.hashLock) {
            revert(string.concat("bad_secret: the secret does not hash (sha256) to HTLC '", id, "''s hash lock"));
        }
        if (block.timestamp >= htlc.timelock) {
            revert(string.concat("too_late: HTLC '", id, "' expired at ", _decimal(htlc.timelock),
                                 " (unix seconds); the chain's time is ", _decimal(block.timestamp)));
        }
        htlc.state = HTLC_UNLOCKED;
        htlc.secret = secret;
        balances[htlc.receiver] += htlc.amount;
        emit HtlcUnlocked(key, id, secret);
    }

    function htlcRefund(string calldata id) external onlyOwner {
        bytes32 key = keccak256(bytes(id));
        Htlc storage htlc = _locked(id, key);
        if (block.timestamp < htlc.timelock) {
            revert(string.concat("too_early: HTLC '", id, "' can be refunded from ", _decimal(htlc.timelock),
                                 " (unix seconds); the chain's time is ", _decimal(block.timestamp)));
        }
        htlc.state = HTLC_REFUNDED;
        balances[htlc.sender] += htlc.amount;
        emit HtlcRefunded(key, id);
    }

    function htlcStatus(string calldata id) external view returns (Htlc memory) {
        return htlcs[keccak256(bytes(id))];
    }

    function _locked(string calldata id, bytes32 key) private view returns (Htlc storage htlc) {
        htlc = htlcs[key];
        if (htlc.state == 0) {
            revert(string.concat("htlc_state: there is no HTLC '", id, "'"));
        }
        if (htlc.state != HTLC_LOCKED) {
            revert(string.concat("htlc_state: HTLC '", id, "' is ", _htlcState(htlc.state), ", not locked"));
        }
    }

    function _htlcState(uint8 state) private pure returns (string memory) {
        if (state == HTLC_LOCKED) return "locked";
        if (state == HTLC_UNLOCKED) return "unlocked";
        if (state == HTLC_REFUNDED) return "refunded";
        return "unknown";
    }

    function _decimal(uint256 value) private pure returns (string memory) {
        if (value == 0) return "0";
        uint256 digits;
        for (uint256 rest = value; rest != 0; rest /= 10) digits++;
        bytes memory text = new bytes(digits);
        for (; value != 0; value /= 10) text[--digits] = bytes1(uint8(48 + value % 10));
        return string(text);
    }
}
