#pragma once

// A whole revision: every file parsed (cached by blob id), then the checks
// that span documents (duplicates, references, class merging). Any error
// rejects the revision whole; nothing of it is used.

#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "sources/desired_state.hpp"
#include "sources/diagnostic.hpp"
#include "sources/document_parser.hpp"
#include "sources/repo_file.hpp"

namespace metalsync {

struct LoadStats {
    std::size_t files = 0;
    std::size_t parsed = 0;  // files actually parsed (not served from the cache)
};

class RevisionLoader {
public:
    using ReadFile = std::function<std::expected<std::string, std::string>(const RepoFile&)>;

    explicit RevisionLoader(YamlLimits limits = {}) : m_limits(limits) {}

    // Parses what changed since the previous call and validates the whole
    // revision. Returns the desired state, or every diagnostic found.
    std::expected<DesiredState, Diagnostics> load(const std::vector<RepoFile>& files, const ReadFile& read);

    [[nodiscard]] const LoadStats& last_stats() const { return m_stats; }

private:
    YamlLimits m_limits;
    std::unordered_map<std::string, std::shared_ptr<const ParsedFile>> m_cache;  // key: path + '\0' + id
    LoadStats m_stats;
};

// The cross-document half of validation, on already parsed files (in path order).
std::expected<DesiredState, Diagnostics> assemble_revision(const std::vector<std::shared_ptr<const ParsedFile>>& files);

} // namespace metalsync
