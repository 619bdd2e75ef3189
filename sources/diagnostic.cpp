#include "sources/diagnostic.hpp"

#include <algorithm>
#include <tuple>

namespace metalsync {

std::string Diagnostic::to_string() const
{
    std::string out = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
    if (!field.empty()) {
        out += field + ": ";
    }
    out += reason;
    return out;
}

void sort_diagnostics(Diagnostics& diagnostics)
{
    std::stable_sort(diagnostics.begin(), diagnostics.end(), [](const Diagnostic& a, const Diagnostic& b) {
        return std::tie(a.file, a.line, a.column) < std::tie(b.file, b.line, b.column);
    });
}

} // namespace metalsync
