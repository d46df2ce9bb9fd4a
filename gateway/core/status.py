"""HTTP statuses the gateway records that are not in the standard library's list."""

# nginx's: the client closed the connection before the answer was complete
CLIENT_CLOSED_REQUEST = 499
