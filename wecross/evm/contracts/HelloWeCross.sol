// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title HelloWeCross: a key/value store, the EVM twin of the embedded chain's `kv` resource.
/// @notice Anyone may read and write any key, as on the embedded chain: through a router every write is signed by
///         the router's key, and the router decides who may reach this resource.
contract HelloWeCross {
    mapping(string => string) private values;

    /// @notice Emitted on every write, so watchers can follow the store through eth_getLogs.
    event Set(string key, string value);

    function set(string calldata key, string calldata value) external {
        values[key] = value;
        emit Set(key, value);
    }

    /// @return The value stored under `key`, or the empty string if none was.
    function get(string calldata key) external view returns (string memory) {
        return values[key];
    }
}
