-- Each customer's bookings in progress (REQUESTED, SEATS_HELD, PAYMENT_AUTHORIZED): what
-- the business-flow caps count (issue 15, ADR 0016). The Bookings application writes a
-- row with Booking.Requested and deletes it with Booking.Confirmed, Rejected or Cancelled,
-- in the events' own transaction; POST /bookings reads a customer's rows under that
-- customer's advisory lock (flightbook.eventstore.inprogress).
CREATE TABLE IF NOT EXISTS booking.bookings_in_progress (
    booking_id uuid PRIMARY KEY,
    customer_id text NOT NULL,
    flight_id uuid NOT NULL,
    seats integer NOT NULL CHECK (seats > 0),
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bookings_in_progress_customer_idx
    ON booking.bookings_in_progress (customer_id);

-- The table is derived from the log: fill it with the bookings in progress when this runs
-- (the same derivation as the application's; a test checks they agree).
INSERT INTO booking.bookings_in_progress (booking_id, customer_id, flight_id, seats)
SELECT requested.originator_id,
       requested.state ->> 'customer_id',
       (requested.state -> 'flight_id' ->> '_data_')::uuid,
       (requested.state ->> 'passenger_count')::integer
FROM (
    SELECT originator_id, convert_from(state, 'UTF8')::jsonb AS state
    FROM booking.bookings_events
    WHERE topic = 'flightbook.domain.booking:Booking.Requested'
) AS requested
WHERE NOT EXISTS (
    SELECT 1 FROM booking.bookings_events AS ended
    WHERE ended.originator_id = requested.originator_id
      AND ended.topic IN (
          'flightbook.domain.booking:Booking.Confirmed',
          'flightbook.domain.booking:Booking.Rejected',
          'flightbook.domain.booking:Booking.Cancelled'
      )
)
ON CONFLICT (booking_id) DO NOTHING;
