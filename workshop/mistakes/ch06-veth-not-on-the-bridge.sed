# file: src/network/netlink.rs
# mistake: the veth's host end not enslaved to the bridge (IFLA_MASTER)
# caught by: ch06_veth_eth0_is_up_inside_and_reaches_the_bridge
/\.attr_u32(IFLA_MASTER, bridge_index as u32)/d
