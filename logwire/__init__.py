"""What both ends of the wire share: the dyno side (`shipper`) and the collector.

The wire formats (native, logcrypto, the APP/SOURCE prefix convention) as pure functions
over bytes, and the few small parts both processes need (addresses, token buckets, logging
and event-loop set-up). Nothing here imports `collector`, `alarms` or `shipper`.
"""
