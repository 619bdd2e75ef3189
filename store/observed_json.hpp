#pragma once

// Lossless JSON form of the observed Ironic objects, as kept in
// observed_nodes.body (and usable for socket replies). Keys follow Ironic's
// own field names.

#include <expected>

#include <nlohmann/json.hpp>

#include "reconcilers/observed_state.hpp"
#include "store/store_error.hpp"

namespace metalsync {

[[nodiscard]] nlohmann::json to_json(const ObservedPort& port);
[[nodiscard]] nlohmann::json to_json(const ObservedNode& node);

// Missing keys take the struct's defaults; a key of the wrong type is an error.
[[nodiscard]] std::expected<ObservedPort, StoreError> observed_port_from_json(const nlohmann::json& j);
[[nodiscard]] std::expected<ObservedNode, StoreError> observed_node_from_json(const nlohmann::json& j);

} // namespace metalsync
