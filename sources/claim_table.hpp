#pragma once

// The index behind a revision's cross-document checks (MACs, BMC
// address:port): who claimed a key first. The checks run over every node of
// every revision, even when one file changed, and an unordered_map node per
// MAC and BMC cost about a fifth of assembling 10,000 nodes (perf,
// bench_load). Here the claims are appended to one array and found through a
// small open-addressing table of 32-bit indexes, both sized up front.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace metalsync {

template <class Key, class Value, class Hash = std::hash<Key>>
class ClaimTable {
public:
    // `expected`: the number of keys that will be claimed (more only cost a
    // rehash).
    explicit ClaimTable(std::size_t expected)
    {
        m_claims.reserve(expected);
        resize_slots(expected);
    }

    // Records `value` as the claimant of `key` and returns nullptr, or returns
    // the first claimant when `key` is already claimed (the table unchanged).
    const Value* claim(const Key& key, const Value& value)
    {
        if ((m_claims.size() + 1) * 2 > m_slots.size()) {
            resize_slots(m_slots.size());
        }
        const std::size_t hash = Hash{}(key);
        for (std::size_t i = hash & m_mask;; i = (i + 1) & m_mask) {
            const std::uint32_t at = m_slots[i];
            if (at == 0) {
                m_claims.push_back({hash, key, value});
                m_slots[i] = static_cast<std::uint32_t>(m_claims.size());
                return nullptr;
            }
            const Claim& c = m_claims[at - 1];
            if (c.hash == hash && c.key == key) {
                return &c.value;
            }
        }
    }

private:
    struct Claim {
        std::size_t hash;
        Key key;
        Value value;
    };

    // At least twice as many slots as claims: probes stay short.
    void resize_slots(std::size_t claims)
    {
        std::size_t slots = 16;
        while (slots < claims * 2) {
            slots *= 2;
        }
        m_slots.assign(slots, 0);
        m_mask = slots - 1;
        for (std::size_t n = 0; n < m_claims.size(); ++n) {
            std::size_t i = m_claims[n].hash & m_mask;
            while (m_slots[i] != 0) {
                i = (i + 1) & m_mask;
            }
            m_slots[i] = static_cast<std::uint32_t>(n + 1);
        }
    }

    std::vector<Claim> m_claims;        // in claim order
    std::vector<std::uint32_t> m_slots; // 1 + index into m_claims; 0 = free
    std::size_t m_mask = 0;
};

} // namespace metalsync
