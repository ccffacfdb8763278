// vhost's dirty log (VHOST_SET_LOG_BASE): the bitmap of vmm/dirty_bitmap.hpp
// with its size. The kernel checks that a log covers what it will mark
// before it uses it (log_access_ok); here the log's size comes with its
// address, both backends refuse a log that does not cover the memory table,
// and each mark checks again.
#pragma once
#include <vector>

#include "vhost/vhost.hpp"
#include "vmm/dirty_bitmap.hpp"

namespace minivmm {

class DirtyLog : public DirtyBitmap {
public:
    using DirtyBitmap::DirtyBitmap;
    explicit DirtyLog(const DirtyBitmap& b) : DirtyBitmap(b) {}
    using DirtyBitmap::covers;
    bool covers(const std::vector<VhostRegion>& regions) const {
        for (const VhostRegion& r : regions)
            if (!covers(r.gpa, r.size)) return false;
        return true;
    }
};

}  // namespace minivmm
