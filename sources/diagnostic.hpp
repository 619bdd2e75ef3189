#pragma once

#include <string>
#include <vector>

namespace metalsync {

// One problem found in the user's repository, with the exact place it was
// found. Printed as `file:line:col: field: reason` (the format editors and
// CI annotators understand). Lines and columns are 1-based.
struct Diagnostic {
    std::string file;   // path relative to the repository's configured root
    int line = 0;
    int column = 0;
    std::string field;  // dotted path, e.g. `spec.ports[0].mac`; empty for the document
    std::string reason;

    [[nodiscard]] std::string to_string() const;
    friend bool operator==(const Diagnostic&, const Diagnostic&) = default;
};

using Diagnostics = std::vector<Diagnostic>;

// Sorts by file, line, column so output is stable across runs.
void sort_diagnostics(Diagnostics& diagnostics);

} // namespace metalsync
