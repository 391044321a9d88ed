-- Which bookings each customer has (issue 17): what an erasure of a customer's personal
-- data must reach. The Bookings application writes a row with Booking.Requested, in the
-- event's own transaction (flightbook.eventstore.customers); rows are never deleted.
-- No personal data: the customer id is the token's subject, as in every booking event.
CREATE TABLE IF NOT EXISTS booking.customer_bookings (
    customer_id text NOT NULL,
    booking_id uuid NOT NULL,
    PRIMARY KEY (customer_id, booking_id)
);

-- The table is derived from the log: fill it with every booking requested before this ran
-- (the same derivation as the application's; a test checks they agree).
INSERT INTO booking.customer_bookings (customer_id, booking_id)
SELECT convert_from(state, 'UTF8')::jsonb ->> 'customer_id', originator_id
FROM booking.bookings_events
WHERE topic = 'flightbook.domain.booking:Booking.Requested'
ON CONFLICT DO NOTHING;
