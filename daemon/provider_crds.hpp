#pragma once

// The CustomResourceDefinitions of metalsync's Cluster API infrastructure
// provider (schemas/crds/*.yaml), compiled into the binary so that the
// daemon can install and upgrade them itself when provider.enabled is set,
// as `clusterctl init` installs a provider's components.

#include <span>
#include <string_view>

namespace metalsync {

struct EmbeddedFile {
    std::string_view path;     // "schemas/crds/metalsyncmachines.yaml"
    std::string_view content;  // the file as it is in the repository
};

[[nodiscard]] std::span<const EmbeddedFile> provider_crd_files();

} // namespace metalsync
