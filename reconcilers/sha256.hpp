#pragma once

// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), self-contained: the only
// use is hashing BMC credentials to notice rotation, which does not justify a
// crypto library dependency (libcurl is linked, but its TLS backend's hash
// functions are not a public API).

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace metalsync {

using Sha256Digest = std::array<std::uint8_t, 32>;

class Sha256 {
  public:
    Sha256();
    void update(std::string_view data);
    // Finishes the hash; the object must not be updated afterwards.
    [[nodiscard]] Sha256Digest finish();

  private:
    void block(const std::uint8_t* chunk);

    std::array<std::uint32_t, 8> m_state;
    std::array<std::uint8_t, 64> m_buffer{};
    std::size_t m_buffered = 0;
    std::uint64_t m_length = 0; // bytes hashed so far
};

[[nodiscard]] Sha256Digest sha256(std::string_view data);
[[nodiscard]] Sha256Digest hmac_sha256(std::string_view key, std::string_view message);
[[nodiscard]] std::string to_hex(const Sha256Digest& digest);

} // namespace metalsync
