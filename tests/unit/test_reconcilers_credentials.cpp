// Credentials files: the optional IPMI cipher suite (`cipherSuite`) beside
// the user name and password. Offline; the runner's use of it against a real
// Ironic and a simulated BMC is tests/scripts/test_ipmi_bmc.sh.

#include <sys/stat.h>

#include <string>

#include <doctest/doctest.h>

#include "reconcilers/credentials.hpp"
#include "tests/support/test_support.hpp"

using namespace metalsync;
using namespace metalsync::test;

namespace {

void write_private(const TempDir& dir, const std::string& name, const std::string& content)
{
    write_file(dir / name, content);
    REQUIRE(::chmod((dir / name).c_str(), 0600) == 0);
}

} // namespace

TEST_SUITE("reconcilers")
{
    TEST_CASE("credentials: cipherSuite is read as the IPMI cipher suite; a non-number or one out of 0..17 is refused")
    {
        TempDir dir("credentials-cipher");
        CredentialsDirectory credentials(dir.path());
        write_private(dir, "plain", "username: admin\npassword: pw-Plain-1\n");
        write_private(dir, "suite3", "username: admin\npassword: pw-Plain-1\ncipherSuite: 3\n");

        auto plain = credentials.read("plain");
        REQUIRE(plain.has_value());
        CHECK_FALSE(plain->cipher_suite.has_value());
        auto suite3 = credentials.read("suite3");
        REQUIRE(suite3.has_value());
        REQUIRE(suite3->cipher_suite.has_value());
        CHECK(*suite3->cipher_suite == 3);

        SUBCASE("the hash changes with the suite, and stays what it was for files without one")
        {
            const std::string key(32, 'k');
            CHECK(secret_hmac(*plain, key) == secret_hmac(BmcCredentials{"admin", "pw-Plain-1"}, key));
            CHECK(secret_hmac(*plain, key) != secret_hmac(*suite3, key));
            BmcCredentials suite17 = *suite3;
            suite17.cipher_suite = 17;
            CHECK(secret_hmac(suite17, key) != secret_hmac(*suite3, key));
        }
        SUBCASE("refused values name the file and the key")
        {
            for (const std::string value : {"18", "-1", "three", "[3]", "3.5"}) {
                CAPTURE(value);
                write_private(dir, "bad", "username: admin\npassword: pw-Plain-1\ncipherSuite: " + value + "\n");
                auto bad = credentials.read("bad");
                REQUIRE_FALSE(bad.has_value());
                CHECK(bad.error().find((dir / "bad").string()) != std::string::npos);
                CHECK(bad.error().find("cipherSuite") != std::string::npos);
            }
        }
    }

    TEST_CASE("credentials: only the IPMI drivers take a cipher suite key")
    {
        CHECK(credential_keys("ipmi").cipher_suite == "ipmi_cipher_suite");
        CHECK(credential_keys("fake-hardware").cipher_suite == "ipmi_cipher_suite");
        CHECK(credential_keys("redfish").cipher_suite.empty());
        CHECK(credential_keys("irmc").cipher_suite.empty());
    }
}
