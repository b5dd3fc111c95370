"""The admin API: the Socket.IO hub, aggregation, REST and admin accounts."""
