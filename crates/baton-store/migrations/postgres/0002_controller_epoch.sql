-- The controller's epoch: raised each time a controller starts on this store, carried by every
-- assignment, so a worker can refuse assignments from a controller that has been replaced.
CREATE TABLE controller_epoch (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL
);
INSERT INTO controller_epoch (id, epoch) VALUES (1, 0);
