// libFuzzer target: the repository loader on hostile input.
//
// The input is one or more files of a revision, separated by a line
// "#~file~" (a YAML comment, so a seed that is one real file stays valid
// YAML). Each is parsed with the daemon's default limits, then the revision
// is assembled as the daemon would. Any outcome is fine except a crash, a
// sanitizer report, a hang or an unbounded allocation; the property checked
// on top is that a rejected file or revision always says why.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "sources/document_parser.hpp"
#include "sources/revision_loader.hpp"

namespace {

constexpr std::string_view k_separator = "\n#~file~\n";
constexpr std::size_t k_max_files = 8;

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    spdlog::set_level(spdlog::level::off);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::string_view input(reinterpret_cast<const char*>(data), size);
    const metalsync::YamlLimits limits;  // the daemon's own
    std::vector<std::shared_ptr<const metalsync::ParsedFile>> files;
    while (files.size() < k_max_files) {
        auto cut = input.find(k_separator);
        std::string_view content = input.substr(0, cut);
        std::string path = "nodes/fuzz-" + std::to_string(files.size()) + ".yaml";
        auto parsed = std::make_shared<const metalsync::ParsedFile>(metalsync::parse_file(path, content, limits));
        for (const auto& d : parsed->diagnostics) {
            if (d.reason.empty()) {
                std::abort();  // a rejection must say why
            }
        }
        files.push_back(std::move(parsed));
        if (cut == std::string_view::npos) {
            break;
        }
        input.remove_prefix(cut + k_separator.size());
    }
    auto revision = metalsync::assemble_revision(files);
    if (!revision && revision.error().empty()) {
        std::abort();
    }
    return 0;
}
