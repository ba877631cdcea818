"""UDP listeners: sockets that hand each datagram to a decoder and the result onward."""
