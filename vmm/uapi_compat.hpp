// Linux uapi constants newer than the headers minivmm may be built against
// (Debian bookworm's linux-libc-dev is 6.1). Each is defined only where the
// system's header lacks it, so newer headers win. Values as the named
// upstream header defines them. <linux/virtio_net.h> itself is not included:
// C++ cannot compile it (a struct member is named `class`); its values are
// the virtio spec's and do not change.
#pragma once
#include <linux/if_tun.h>

// include/uapi/linux/virtio_net.h, Linux 6.2: UDP segmentation offload.
#ifndef VIRTIO_NET_F_GUEST_USO4
#define VIRTIO_NET_F_GUEST_USO4 54  // the driver takes USO over IPv4
#endif
#ifndef VIRTIO_NET_F_GUEST_USO6
#define VIRTIO_NET_F_GUEST_USO6 55  // the driver takes USO over IPv6
#endif
#ifndef VIRTIO_NET_F_HOST_USO
#define VIRTIO_NET_F_HOST_USO 56  // the device takes USO from the driver
#endif
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5  // gso_type: UDP over IPv4 or IPv6 (USO)
#endif

// include/uapi/linux/if_tun.h, Linux 6.2: TUNSETOFFLOAD flags. The kernel
// takes them only together and with TUN_F_CSUM.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

// include/uapi/linux/virtio_net.h, Linux 6.0: notification coalescing, set
// for all receive or all transmit queues.
#ifndef VIRTIO_NET_F_NOTF_COAL
#define VIRTIO_NET_F_NOTF_COAL 53  // the device takes VIRTIO_NET_CTRL_NOTF_COAL
#endif
#ifndef VIRTIO_NET_CTRL_NOTF_COAL
#define VIRTIO_NET_CTRL_NOTF_COAL 6  // the control class
#endif
#ifndef VIRTIO_NET_CTRL_NOTF_COAL_TX_SET
#define VIRTIO_NET_CTRL_NOTF_COAL_TX_SET 0  // le32 tx_max_packets, le32 tx_usecs
#endif
#ifndef VIRTIO_NET_CTRL_NOTF_COAL_RX_SET
#define VIRTIO_NET_CTRL_NOTF_COAL_RX_SET 1  // le32 rx_max_packets, le32 rx_usecs
#endif
// include/uapi/linux/virtio_net.h, Linux 6.5: the same per virtqueue.
#ifndef VIRTIO_NET_F_VQ_NOTF_COAL
#define VIRTIO_NET_F_VQ_NOTF_COAL 52  // the device takes VQ_SET and VQ_GET
#endif
#ifndef VIRTIO_NET_CTRL_NOTF_COAL_VQ_SET
#define VIRTIO_NET_CTRL_NOTF_COAL_VQ_SET 2  // le16 vqn, le16 reserved, le32 max_packets, le32 max_usecs
#endif
#ifndef VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET
#define VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET 3  // le16 vqn in; le32 max_packets, le32 max_usecs back
#endif
