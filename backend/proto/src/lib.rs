//! The shop's gRPC contracts, generated from `proto/` at build time.
//!
//! Each service has a versioned package (`shop.users.v1`, ...); this crate
//! mirrors them as modules so a reader finds `shop_proto::users::v1::User`.

/// Why a service refused a call: the reasons its `google.rpc.ErrorInfo`
/// carries (read and written by `shop_grpc::rich_error`).
pub mod errors {
    pub mod v1 {
        tonic::include_proto!("shop.errors.v1");
    }
}

pub mod users {
    pub mod v1 {
        tonic::include_proto!("shop.users.v1");
    }
}

pub mod inventory {
    pub mod v1 {
        tonic::include_proto!("shop.inventory.v1");
    }
}

pub mod orders {
    pub mod v1 {
        tonic::include_proto!("shop.orders.v1");
    }
}

/// Every service's descriptors, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shop_descriptor.bin"));

/// Conversions between protobuf timestamps and Unix milliseconds, the form
/// the databases keep times in.
pub mod time {
    use prost_types::Timestamp;

    pub fn from_unix_ms(ms: i64) -> Timestamp {
        Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn converts_before_and_after_the_epoch() {
            assert_eq!(from_unix_ms(1_500), Timestamp { seconds: 1, nanos: 500_000_000 });
            assert_eq!(from_unix_ms(-1), Timestamp { seconds: -1, nanos: 999_000_000 });
        }
    }
}
