#include "vmm/privileges.hpp"

#include <gtest/gtest.h>

#include "vmm/error.hpp"

using namespace minivmm;

TEST(Privileges, UserByNameOrIds) {
    Identity root = parse_identity("root");
    EXPECT_EQ(root.uid, 0u);
    EXPECT_EQ(root.gid, 0u);
    Identity ids = parse_identity("1234:5678");
    EXPECT_EQ(ids.uid, 1234u);
    EXPECT_EQ(ids.gid, 5678u);
    // -1 would mean "leave unchanged" to setresuid: refused, not a silent no-op.
    for (const char* bad : {"nosuchuser0", "4294967295:0", "0:4294967295", "12:", ":12", "1:2:3", ""})
        EXPECT_THROW(parse_identity(bad), UserError) << bad;
}

TEST(Privileges, JailMustBeADirectoryOtherThanRoot) {
    EXPECT_NO_THROW(Confinement(std::nullopt, std::string("/tmp")));
    EXPECT_THROW(Confinement(std::nullopt, std::string("/nonexistent-minivmm-jail")), UserError);
    EXPECT_THROW(Confinement(std::nullopt, std::string("/etc/passwd")), UserError);
    EXPECT_THROW(Confinement(std::nullopt, std::string("/")), UserError);
    EXPECT_THROW(Confinement(std::nullopt, std::string("/tmp/..")), UserError);  // resolved first
    EXPECT_THROW(Confinement(std::string("nosuchuser0"), std::nullopt), UserError);
}
