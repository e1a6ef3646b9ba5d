"""What may never reach an email header, defined once for every layer that checks it.

Configuration (addresses, the sender), the row values a subject is made of and the
MIME writer all refuse these characters: a line break in a header would let a value
add a header or a recipient.
"""

#: Characters no header value may hold: line breaks of any kind, and NUL.
FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0", "\u2028", "\u2029", "\x85")
