// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title AssetLedger: balances of named accounts, the EVM twin of the embedded chain's `asset` resource.
/// @notice Accounts are strings (the router's user names), not addresses: users never hold Ethereum keys. The only
///         signer is the deployer, i.e. the router's key, so every write is restricted to it; the router checks
///         who its caller is (a transfer only from the caller's own account, a mint only by the configured issuer)
///         before it signs.
contract AssetLedger {
    address public immutable owner;
    uint256 public totalSupply;
    mapping(string => uint256) private balances;

    /// @notice A mint is a transfer from the empty account name.
    event Transfer(string from, string to, uint256 amount);

    modifier onlyOwner() {
        require(msg.sender == owner, "only the owner");
        _;
    }

    constructor() {
        owner = msg.sender;
    }

    function balanceOf(string calldata account) external view returns (uint256) {
        return balances[account];
    }

    function mint(string calldata account, uint256 amount) external onlyOwner {
        require(bytes(account).length > 0, "empty account name");
        totalSupply += amount;
        balances[account] += amount;
        emit Transfer("", account, amount);
    }

    function transfer(string calldata from, string calldata to, uint256 amount) external onlyOwner {
        require(bytes(from).length > 0 && bytes(to).length > 0, "empty account name");
        uint256 held = balances[from];
        require(held >= amount, "insufficient balance");
        unchecked {
            balances[from] = held - amount;
        }
        balances[to] += amount;
        emit Transfer(from, to, amount);
    }
}
